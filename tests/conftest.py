import numpy as np
import pytest

import bayesgmm as bg

STRUCTURES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="session")
def faithful():
    return bg.load_dataset("faithful")


@pytest.fixture(scope="session")
def iris():
    return bg.load_dataset("iris")


def blobs(seed=0, n=300, d=3, K=3, spread=4.0):
    """Well-separated Gaussian blobs with correlated, unequal covariances."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(K, d))
    X = []
    for k in range(K):
        A = rng.normal(size=(d, d)) * (0.5 + k * 0.3)
        X.append(centres[k] + rng.normal(size=(n // K, d)) @ A.T)
    return np.vstack(X)

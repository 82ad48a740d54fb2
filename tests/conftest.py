import numpy as np
import pytest

import bayesgmm as bg

STRUCTURES = ["full", "tied", "diag", "spherical", "EEI", "EII"]
#: the structures scikit-learn's GaussianMixture has
SKLEARN_STRUCTURES = STRUCTURES[:4]


@pytest.fixture(scope="session")
def faithful():
    return bg.load_dataset("faithful")


@pytest.fixture(scope="session")
def iris():
    return bg.load_dataset("iris")


@pytest.fixture(scope="session")
def faithful_nuts(faithful):
    """NUTS on Old Faithful, K = 2, full: 4 chains × (1000 + 1000), seed 11 (≈ 60 s cold),
    and the SamplerWarnings it raised; shared by the posterior and Gibbs tests."""
    import warnings

    from bayesgmm.health import SamplerWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplerWarning)
        idata = bg.sample_posterior(faithful, 2, "full", sampler="nuts", draws=1000, tune=1000,
                                    chains=4, random_seed=11, progressbar=False)
    return idata, [str(w.message) for w in caught if issubclass(w.category, SamplerWarning)]


def blobs(seed=0, n=300, d=3, K=3, spread=4.0):
    """Well-separated Gaussian blobs with correlated, unequal covariances."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(K, d))
    X = []
    for k in range(K):
        A = rng.normal(size=(d, d)) * (0.5 + k * 0.3)
        X.append(centres[k] + rng.normal(size=(n // K, d)) @ A.T)
    return np.vstack(X)

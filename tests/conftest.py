import numpy as np
import pytest

import bayesgmm as bg

STRUCTURES = ["full", "tied", "diag", "spherical", "EEI", "EII", "VEI", "EVI", "EEV", "VEV",
              "EVV", "VEE", "EVE", "VVE"]
#: for the end-to-end tests (the table's contract and the mclust fixtures cover all fourteen):
#: the six compiled rows and one of each NumPy M-step — closed-form diagonal (EVI) and
#: eigen (EEV), an alternation (VEE), Jacobi rotations (EVE)
END_TO_END_STRUCTURES = STRUCTURES[:6] + ["EVI", "EEV", "VEE", "EVE"]
#: the structures scikit-learn's GaussianMixture has
SKLEARN_STRUCTURES = STRUCTURES[:4]
#: the structures the Gibbs sampler draws (its conjugate steps exist)
GIBBS_STRUCTURES = STRUCTURES[:6]
#: the structures NUTS draws: those and the restricted variances of VEI and EVI (the
#: orientation models' prior is restricted to a set the samplers do not parametrise)
SAMPLER_STRUCTURES = GIBBS_STRUCTURES + ["VEI", "EVI"]


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

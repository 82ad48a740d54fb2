"""Every call that depends on the PyMC or ArviZ version, in one place (DESIGN §6–§7).

The tested line is PyMC 5.x with ArviZ 0.23 (Python 3.11); moving to PyMC 6 / ArviZ 1.x (where
``InferenceData`` becomes an xarray ``DataTree`` and the statistics move to arviz-stats) means
changing this module only.  Imported on first use: it imports ArviZ.
"""

from __future__ import annotations

from ._io import netcdf_bytes

__all__ = ["inference_data_bytes"]


def inference_data_bytes(idata) -> bytes:
    """An InferenceData as netCDF-4 bytes (one group per ArviZ group), built in memory, so that
    writing it is one atomic file write; ``arviz.from_netcdf`` reads it back."""
    return netcdf_bytes(idata.to_datatree())

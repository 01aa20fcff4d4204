"""jepa-lightning: the JEPA family of self-supervised methods on PyTorch Lightning."""

__version__ = "0.1.0"

"""cnnctl: train, evaluate and run image classifiers from one YAML file."""

__version__ = "0.1.0"

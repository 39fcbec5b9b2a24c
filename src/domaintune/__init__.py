"""domaintune: fine-tune pre-trained models on a domain and search their hyperparameters."""

__version__ = "0.1.0"

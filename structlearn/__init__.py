"""structlearn: discover a network's structure from dense unsupervised training."""
__version__ = "0.1.0"

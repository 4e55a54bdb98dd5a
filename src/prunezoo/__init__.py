"""prunezoo: prune neural networks and study pruned populations of networks."""

__version__ = "0.1.0"

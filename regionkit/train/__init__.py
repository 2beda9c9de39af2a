"""Streaming region datasets into a DeepSpeed trainer for the region model."""

"""Probing untrained networks: the probe minibatch, the probe passes, the probe cache and the terminals."""

"""Rewards: GAN-RM (discriminative/), RewardDance (generative/), the field's standard rewards, a remote reward,
their weighted combination, the off-manifold probes, and one loader for every kind (loader.py)."""

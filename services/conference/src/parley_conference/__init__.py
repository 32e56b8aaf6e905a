"""Parley conference service: the conference control plane."""

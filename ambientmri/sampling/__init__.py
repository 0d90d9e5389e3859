"""Sampling: noise schedules, samplers, ambient generation, restoration and classical baselines."""

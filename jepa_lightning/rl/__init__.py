"""Reinforcement-learning support shared by TD-JEPA and ACT-JEPA: environments, data collection, reward
relabeling, scripted experts and evaluation rollouts. Nothing here imports a method."""

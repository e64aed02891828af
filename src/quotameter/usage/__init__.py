"""Usage broken down: who used how much, and when (per group, per calendar window)."""

"""The agent's modules: each file registers itself with the core (installed as hsflowd_py.modules)."""

"""The bundled sFlow collector: an sflowtool-compatible decoder built on the agent's own record table."""

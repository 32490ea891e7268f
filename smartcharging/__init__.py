"""Site load management: capacity, allocation and charging-profile dispatch."""

"""Rate limits, load shedding and the other guards that keep a node answering."""

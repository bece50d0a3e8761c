"""Simulation: an embedded broker and a simulated meter, for `p1evse demo` and tests."""

"""The web layer against real HTTP servers on loopback."""

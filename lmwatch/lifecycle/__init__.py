"""Model lifecycle across the fleet: keep models loaded, place them where they fit, unload idle
ones, warm them up, swap one for another without dropping requests. `manager.Lifecycle` wires it."""

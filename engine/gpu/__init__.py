"""The GPU side of the engine: tiers and their policies, placement of the models, VRAM estimates and the guard."""

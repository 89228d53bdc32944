"""LoRA and LoKR adapters in the engine: applied to a loaded pipeline and swapped
without a reload (`manager`), kept loaded per worker, most recently used first
(`cache`), and a random LoRA of the right shape for checks (`random_lora`)."""

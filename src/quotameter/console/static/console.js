// quotameter console: what plain pages cannot do alone. No framework, no build step.

"""What the Trainer and Transform hand to user modules."""

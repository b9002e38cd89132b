"""The training loop, the stepper, metrics, feature cache, autobatch, lr range and stream."""

"""A training session built from a RunConfig: resolved defaults, optimizer, schedule, loss."""

"""Training without a framework: flags, the loop, exact resume, LR schedules and logs;
each tree supplies only a TrainEngine."""

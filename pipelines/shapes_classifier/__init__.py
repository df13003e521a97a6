"""The shapes-world classifier: judge of generated images and the feature space of proxy FD and pscore."""

"""Job kinds -> pipeline objects, the model zoo, data generators and training loops."""

"""The policy pack over the recorded graphs of the program."""

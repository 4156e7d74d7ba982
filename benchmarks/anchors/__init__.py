"""Other runtimes measured on the same machine in the same run, as anchors for our numbers."""

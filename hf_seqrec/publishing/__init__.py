"""Publishing a finished run: its model card (README.md and training curve) and the upload to the Hugging Face Hub."""

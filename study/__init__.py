"""User studies: study files, counterbalancing, the participant flow, exports and results (no gradio)."""

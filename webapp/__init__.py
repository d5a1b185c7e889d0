"""The Gradio app's insides: the loaded services, per-event handlers, HTML views and the page layout.

``app.py`` builds the services and the page from here. Handlers are plain functions (no gradio inside)
so tests call them directly; ``ui.py`` is the only module that touches gradio components.
Not for: ranking (recsys/), language (dialogue/) or queries (storage/).
"""

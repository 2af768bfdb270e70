"""Gradio web demo (``refalign demo``): :func:`refalign.demo.app.build_demo` builds the page for a loaded pipeline.

Importing this package imports neither gradio nor torch; the app module does when it is used.
"""

"""The six steps of the page, one room each: `Studio`'s handlers of that step (mixins over
`demo.ui.handlers.Studio`, which holds the model host, the sessions and their files)."""

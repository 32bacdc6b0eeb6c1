"""The typed engine API both front ends call: `facade.Engine` and the records it returns.

`types` holds `EngineProtocol` and the records it exchanges; `facade` implements it over the
other sub-packages with deferred imports, so opening the TUI never imports torch.

May import: every other engine sub-package.
"""

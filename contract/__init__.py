"""The contract both programs speak: the wire protocol, the quality model, the vocabularies,
config loading and sd_notify.

It sits at the bottom of the import graph: `agent` and `controller` import it, it imports
neither, and it imports nothing heavy (no aiortc, no database), so the controller stays light.
"""

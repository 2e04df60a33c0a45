"""Media plane: aiortc peer connections, passthrough forwarding, keyframe policy."""

"""The producer side: validate a job, store it and queue it; read it back; wait for it; bulk
files and scheduled runs. The public way in is the top-level package (`from imageq import
enqueue, ...`); `api.ImageQueue` is the class behind it."""

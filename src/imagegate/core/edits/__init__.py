"""Image edits (SPEC section 7): inputs read and checked, stored, and run as tasks.

``sources`` turns what the client sent (uploads, URLs, data: URIs, this gateway's own
files) into bytes on disk; ``inputs`` checks those bytes; ``params`` holds the edit rules
beyond a generation's; ``service`` records, charges and runs the task through the same
lifecycle as generations.
"""

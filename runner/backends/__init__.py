"""Container backends behind one seam (`base.Backend`): docker, and a fake for engine tests."""

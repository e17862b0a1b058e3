"""The builder half: run builds on a container engine, push the images, keep the logs."""

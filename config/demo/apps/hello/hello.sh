#!/bin/sh
echo "hello from an image built on: $(cat /etc/base-release)"

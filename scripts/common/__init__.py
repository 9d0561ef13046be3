"""What the training scripts share, and nothing `import hiddenmix` needs: command-line plumbing, the labelled-dataset
loader with the offline data, and the runs a script trains, scores and writes."""

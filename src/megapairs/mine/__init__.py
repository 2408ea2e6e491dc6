"""mine: heterogeneous KNN pairs from several similarity views, with hard negatives."""

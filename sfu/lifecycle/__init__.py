"""The VOD storage lifecycle (`sfu lifecycle`): tiering of published sessions by age and by how
likely they are to be watched again, restores from Archive, the cost report, orphan cleanup."""

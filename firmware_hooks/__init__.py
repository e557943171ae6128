"""Update bundles and board/camera firmware hooks."""

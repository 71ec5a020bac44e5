module zhllama

go 1.26

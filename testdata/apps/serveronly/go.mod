module example.com/serveronly

go 1.21

module calchost

go 1.18

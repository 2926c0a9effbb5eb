"""footage and farms: frame sources, resumable jobs, temporal alignment, Ray"""
